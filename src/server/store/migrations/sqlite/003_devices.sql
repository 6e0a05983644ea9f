-- Devices holding a side of a stream ([sender, receiver] as JSON), and the host they reach
-- the server at.
ALTER TABLE streams ADD COLUMN devices TEXT NOT NULL DEFAULT '[null,null]';
ALTER TABLE sessions ADD COLUMN public_host TEXT;
