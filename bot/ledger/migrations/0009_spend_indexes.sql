-- What the caps read (#25, `bot.ledger.budgets.spend_by`) without scanning every cost of the period: a user's or a
-- guild's jobs, then each job's recorded costs in the period (0007's indexes serve a period across every job, the
-- usage report's query). Measured with EXPLAIN QUERY PLAN on a ledger of 10,000 items: a guild's month read every
-- cost of the month (items_by_spent_at) and now reads only its jobs' (jobs_by_guild, items_spent_by_job).
CREATE INDEX items_spent_by_job ON items (job_id, spent_at) WHERE cost_usd IS NOT NULL;
CREATE INDEX jobs_by_guild ON jobs (guild_id, owner_id);
