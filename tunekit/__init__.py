"""Support library a submission uses: data, trial recording, reports."""
