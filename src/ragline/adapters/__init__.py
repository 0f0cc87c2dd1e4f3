"""Adapters, one package per port, each with a registry: embedders, stores, generators, caches, buses."""
