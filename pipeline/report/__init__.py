"""The study's report (DVC stage `report`): Table 1 and the paper's figures from the sweep's and
the evaluation's tables, as one self-contained HTML page and a Markdown file, logged to MLflow.

Modules: data (the inputs), doc (the report as data), figures (matplotlib), tables, experiments
and maps (one section per experiment), samples (image grids, header), render (HTML, Markdown),
study (the stage entry `build_report`).
"""
