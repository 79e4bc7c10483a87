"""One construct per concern; each acknowledges its own cdk-nag findings, with reasons."""
