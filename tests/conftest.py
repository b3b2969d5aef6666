import os

# Tests run side by side with nothing else: one thread each keeps torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")
