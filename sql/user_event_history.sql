-- A user's history at daily resolution: per day and event type, how many events and when the first and last were.
-- (Single events stay in lake.events, which analysts may not read.)
--   SELECT * FROM bi.user_event_history WHERE user_id = '…' ORDER BY first_seen
CREATE OR REPLACE VIEW bi.user_event_history
COMMENT 'Per user, day and event type: events, first and last event, country'
SECURITY INVOKER AS
SELECT user_id, event_date, event_type, country, events, first_seen, last_seen
FROM lake.daily_user_activity
