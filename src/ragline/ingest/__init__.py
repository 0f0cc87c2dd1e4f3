"""Ingestion: loading files into Documents and cutting them into chunks."""
