"""The UniCode Space: `python app.py` here, or as a Hugging Face Space (sdk: gradio, app_file: app.py).

The model folder comes from the UNICODE_MODEL environment variable (default runs/quickstart/model). On Spaces
(SPACE_ID is set) it listens on 0.0.0.0; locally on 127.0.0.1 only.
"""

import os

from transformers_unicode.space import launch_space

if __name__ == "__main__":
    launch_space(
        os.environ.get("UNICODE_MODEL", "runs/quickstart/model"),
        server_name="0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1",
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
