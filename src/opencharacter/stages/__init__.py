"""Pipeline stages: each builds requests from records and parses completions back; the engine calls the model."""
