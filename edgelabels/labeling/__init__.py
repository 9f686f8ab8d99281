"""People in the loop: Label Studio projects filled with our answers, and their corrections read back."""
