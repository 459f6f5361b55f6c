-- Cart abandonment rate per day: of the shoppers who added something to a cart that day, the
-- share who placed no order that day.
WITH carts AS (
    SELECT DISTINCT date, user_id FROM cart_item_added
), buyers AS (
    SELECT DISTINCT date, user_id FROM order_placed
)
SELECT c.date,
       count(*) AS shoppers_with_cart,
       count(b.user_id) AS converted,
       round(1.0 - CAST(count(b.user_id) AS DOUBLE) / count(*), 4) AS abandonment_rate
FROM carts c LEFT JOIN buyers b ON b.date = c.date AND b.user_id = c.user_id
GROUP BY c.date
ORDER BY c.date
