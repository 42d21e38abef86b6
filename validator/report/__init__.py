"""Everything the gate writes for humans and machines: overlays, verdict.json, JUnit, Markdown, HTML, CSV."""
