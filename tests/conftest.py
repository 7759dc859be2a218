import os

# The shard partitions are sized from the preset when the definitions are imported.
os.environ.setdefault("GENIXER_PRESET", "smoke")
os.environ["GENIXER_PRESET"] = "smoke"
