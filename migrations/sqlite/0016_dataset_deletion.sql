-- Datasets can be deleted (issue 11): the row stays, marked deleted, for the records that name
-- it (legal holds, audit entries, request results); its name is freed and its root may be
-- registered again. Deleting unregisters only: the lake's files are not touched.
ALTER TABLE datasets ADD COLUMN deleted_at TEXT;
