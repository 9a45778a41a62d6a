"""A minimal Django project on kirocache: CACHES, cache_page, cached sessions, @cached."""
