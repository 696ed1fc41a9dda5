"""`opencharacter serve`: any backend behind an OpenAI-compatible HTTP API (`server`), and the request
and response shapes it accepts and answers in (`api`)."""
