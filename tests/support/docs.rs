//! The operations of the product docs page, exactly as written there.

pub const USERS: &str = "# Subscribe to all changes on a table
subscription {
users {
id
name
email
updatedAt
}
}";

pub const PENDING_ORDERS: &str = r#"# Subscribe with filters
subscription {
orders(filter: { status: { eq: "pending" } }) {
id
total
status
customer {
name
email
}
}
}"#;

pub const DASHBOARD: &str = "subscription {
salesDashboard {
totalRevenue
orderCount
averageOrderValue
topProducts {
name
salesCount
}
}
}";

pub const JS_CLIENT: &str = r#"
subscription {
orders(filter: { status: { eq: "pending" } }) {
id
total
status
}
}
"#;

pub const APOLLO: &str = r#"
subscription OnOrderUpdate {
orders(filter: { status: { eq: "pending" } }) {
id
total
status
customer { name }
}
}
"#;

/// All of them.
pub const OPERATIONS: [&str; 5] = [USERS, PENDING_ORDERS, DASHBOARD, JS_CLIENT, APOLLO];
