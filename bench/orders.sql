-- The table the change-source benches write: 10,000 orders, each UPDATE of one of them a
-- commit (bench/notify.sh, bench/change_source.sh).
DROP TABLE IF EXISTS bench_orders;
CREATE TABLE bench_orders (
  id int PRIMARY KEY,
  customer_id int NOT NULL,
  status text NOT NULL,
  total numeric(10, 2) NOT NULL,
  note text
);
INSERT INTO bench_orders
SELECT i, i % 1000, 'pending', 10, NULL FROM generate_series(1, 10000) i;
VACUUM ANALYZE bench_orders;
