"""Where things are in a commit tree.

```
arraysets/<aset>/schema                  JSON schema blob
arraysets/<aset>/samples/<h>/<h>/<h>/<k> pointer blob of sample key k (h: hex fan-out)
metadata/<h>/<k>                         metadata value blob
```
"""

ARRAYSETS = "arraysets"
METADATA = "metadata"
SCHEMA = "schema"
SAMPLES = "samples"
METADATA_FANOUT_DEPTH = 1
