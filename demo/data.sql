-- Seed data for the demo database (after schema.sql). Timestamps are fixed so that tests
-- can compare exact results.

INSERT INTO users (name, email, updated_at) VALUES
  ('Ada Lovelace', 'ada@example.com', '2026-01-05 09:00:00+00'),
  ('Grace Hopper', 'grace@example.com', '2026-01-06 10:30:00+00'),
  ('Linus Torvalds', 'linus@example.com', '2026-01-07 12:15:00+00');

INSERT INTO customers (name, email, vip, created_at) VALUES
  ('Acme Corp', 'buyer@acme.test', true, '2025-12-01 08:00:00+00'),
  ('Globex', 'orders@globex.test', false, '2025-12-02 08:00:00+00'),
  ('Initech', 'peter@initech.test', false, '2025-12-03 08:00:00+00');

INSERT INTO products (sku, name, price, weight_kg, tags, attributes, released_on) VALUES
  ('00000000-0000-4000-8000-000000000001', 'Widget', 9.99, 0.25, '{tools,small}',
   '{"color": "red"}', '2025-06-01'),
  ('00000000-0000-4000-8000-000000000002', 'Gadget', 24.50, 1.5, '{electronics}',
   '{"color": "black", "battery": true}', '2025-09-15'),
  ('00000000-0000-4000-8000-000000000003', 'Gizmo', 99.00, NULL, '{}', NULL, NULL);

INSERT INTO orders (customer_id, total, status, priority, note, created_at, updated_at) VALUES
  (1, 44.48, 'pending', 'high', 'Leave at the door', '2026-01-10 10:00:00+00', '2026-01-10 10:00:00+00'),
  (1, 99.00, 'paid', 'normal', NULL, '2026-01-11 11:00:00+00', '2026-01-11 11:30:00+00'),
  (2, 19.98, 'pending', 'low', NULL, '2026-01-12 12:00:00+00', '2026-01-12 12:00:00+00'),
  (3, 24.50, 'shipped', 'normal', 'Fragile', '2026-01-13 13:00:00+00', '2026-01-14 09:00:00+00'),
  (2, 9.99, 'cancelled', 'low', NULL, '2026-01-14 14:00:00+00', '2026-01-14 15:00:00+00');

INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES
  (1, 1, 2, 9.99),
  (1, 2, 1, 24.50),
  (2, 3, 1, 99.00),
  (3, 1, 2, 9.99),
  (4, 2, 1, 24.50),
  (5, 1, 1, 9.99);
