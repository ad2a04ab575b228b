"""Evaluation: matching answers, error codes, first and second attempts, persisted item sets."""
