"""Pipeline stages: each builds requests from records and parses completions back.

The engine makes the calls; a stage never talks to a backend directly.
"""
