"""The example model: abalone age (rings) from physical measurements.

What a data scientist replaces: the feature schema, the Glue ETL script, the training and
evaluation entrypoints and the inference server. It knows nothing of GitHub, CloudFormation or the
pipeline that runs it.
"""
