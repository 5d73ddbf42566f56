// Prints graphql-js's full introspection query (what GraphiQL and code generators send).
import { getIntrospectionQuery } from 'graphql';

process.stdout.write(
  getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
  }),
);
