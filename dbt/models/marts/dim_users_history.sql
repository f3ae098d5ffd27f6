-- One row per user and version, with the days it is valid on: which account a user belongs to
-- on a past day D (valid_from <= D and (valid_to is null or D < valid_to)), besides the user's
-- own created, activated and deactivated times. Each user's earliest version is extended back
-- (valid_from 1900-01-01): days before the first load use the earliest record.
{{ history_days('stg_raw__users_history', 'user_id',
    ['account_id', 'email', 'role', 'created_at', 'activated_at', 'deactivated_at']) }}
