"""Run-directory files (characters, dialogues, failures, dataset card) and ecosystem export formats."""
