-- Documents listed by their owner without naming the space (a project's releases, channels,
-- runbooks; newest first or in order): without this index such a list scanned every document of
-- the collection (50,000 releases for one project's 50, about 400 ms).
CREATE INDEX documents_owner ON documents (collection, owner_id, seq);
