-- Events per day, type, country and user, from the daily aggregates; the row with a NULL user_id holds the day's
-- anonymous events. Totals and exact unique users over any day range (DESIGN §5):
--   SELECT sum(events) AS events, count(DISTINCT user_id) AS users FROM bi.event_usage
--   WHERE event_type = 'login' AND country = 'DE' AND event_date BETWEEN DATE '2024-03-01' AND DATE '2024-03-07'
-- Over whole months, bi.monthly_event_usage gives the same answer from one partition per month instead of one per day;
-- over any range, read the whole months in between there and the edge days here (README: Asking the gold tables).
CREATE OR REPLACE VIEW bi.event_usage
COMMENT 'Events per day, type, country and user (NULL user: anonymous events); sum events, count DISTINCT user_id'
SECURITY INVOKER AS
SELECT event_date, event_type, country, user_id, events
FROM lake.daily_user_activity
UNION ALL
-- A day's anonymous events per type and country, counted by aggregate: daily_user_activity is read once.
SELECT event_date, event_type, country, CAST(NULL AS varchar) AS user_id, anonymous_events AS events
FROM lake.daily_event_stats
WHERE anonymous_events > 0
