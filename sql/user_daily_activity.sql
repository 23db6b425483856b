-- One row per user and active day: events of all types, how many types, and the first and last event of the day.
--   SELECT * FROM bi.user_daily_activity WHERE user_id = '…' ORDER BY event_date
CREATE OR REPLACE VIEW bi.user_daily_activity
COMMENT 'Per user and day: events, distinct event types, first and last event, last country seen'
SECURITY INVOKER AS
SELECT
    user_id,
    event_date,
    sum(events) AS events,
    count(DISTINCT event_type) AS event_types,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    max_by(country, last_seen) AS country
FROM lake.daily_user_activity
GROUP BY user_id, event_date
