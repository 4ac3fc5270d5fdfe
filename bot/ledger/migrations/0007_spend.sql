-- What was really spent (#25). An item's `cost_usd` is what Gemini charged for all its attempts, priced by the bot
-- from the usage the worker reported (`bot.core.pricing.cost_of`; NULL: nothing recorded yet, or a price the table
-- does not know) and `usage` that usage (JSON of `worker.contract.TokenUsage`, summed over the attempts); `spent_at`
-- is when its last cost was recorded, which is the day and month the item's spend counts in. A chunk's `runpod_s`
-- is the RunPod worker time it was billed (`executionTime`, seconds; a relax part's prepare and collect jobs summed)
-- and `runpod_cost_usd` that time at RUNPOD_PRICE_PER_S.

ALTER TABLE items ADD COLUMN cost_usd REAL;
ALTER TABLE items ADD COLUMN usage TEXT;
ALTER TABLE items ADD COLUMN spent_at TEXT;
ALTER TABLE chunks ADD COLUMN runpod_s REAL;
ALTER TABLE chunks ADD COLUMN runpod_cost_usd REAL;

-- `Ledger.spent` sums a period's costs: only rows with a cost, by time.
CREATE INDEX items_by_spent_at ON items (spent_at) WHERE cost_usd IS NOT NULL;
CREATE INDEX chunks_by_finished_at ON chunks (finished_at) WHERE runpod_cost_usd IS NOT NULL;
