-- Whether a commit first arrived in a force push (a risk factor of its analysis).

ALTER TABLE commits ADD COLUMN forced BOOLEAN NOT NULL DEFAULT FALSE;
