#!/usr/bin/env python3
"""Make an int8 bundle from an f32 one: the same files (hard-linked where
the filesystem allows, copied where not) and a config.json that says
"llma_precision": "int8". The plugin quantises the weights when it loads the
bundle (plugin/src/int8), so the ONNX file is the f32 export, unchanged.

    python models/int8_bundle.py SRC_DIR DST_DIR
"""

import json
import os
import shutil
import sys


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if not os.path.isfile(s) or name == "config.json":
            continue
        if os.path.exists(d):
            os.remove(d)
        try:
            os.link(s, d)
        except OSError:
            shutil.copyfile(s, d)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["llma_precision"] = "int8"
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"wrote {dst}: {src} with llma_precision int8")


if __name__ == "__main__":
    main()
