"""How a fine-tuned model is scored (paper §4; videoclip-facts §2.6): `protocols` runs each task's
protocol over encoded test pairs (text→video, multi-sentence and paragraph retrieval, DiDeMo's
21-moment ranking, QA and multiple choice), `retrieval_metrics` holds the tie-safe and
MMPT-compatible R@K/MedR and DualSoftmax, `qa_metrics` the accuracy of QA and multiple choice.
Pure functions over arrays and small tables; the evaluate stage reads and writes the files.
"""
