"""The scheduled digest: its content, rendering, delivery with a chart, and the Lambda app."""
