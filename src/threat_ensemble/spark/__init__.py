"""Featurizing and scoring on Spark, the optional extra ``[spark]``: ``featurize`` computes every
request's features with the local featurizer's own code inside Spark tasks and the per-client
windows with Spark window functions over all files of a stream; ``score`` runs the logged MLflow
model through ``mlflow.pyfunc.spark_udf``; ``session`` starts a quiet session; ``files`` checks
and writes output folders. Importing this package does not import pyspark."""
