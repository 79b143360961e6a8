-- hr_records.attributes is read by the importer alone (to name the attributes a mover
-- changed): it is kept as the JSON bytes the importer wrote and digested, so that PostgreSQL
-- no longer parses every imported record into jsonb (a third of the cost of writing one).
ALTER TABLE hr_records ALTER COLUMN attributes TYPE bytea USING convert_to(attributes::text, 'UTF8');
-- An importer of the previous release still running during a rolling update fails its batch
-- against this column (that batch is not applied); importing the extract again on the new
-- release completes it.
