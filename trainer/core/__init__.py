"""What every stage uses: storage URIs (fsspec), verified artifacts, JSONL reading, the stage errors,
pretrained-model loading, and the training-example format that curate writes and finetune reads."""
