\set x random(0, 999)
SELECT :x::int + 1;
