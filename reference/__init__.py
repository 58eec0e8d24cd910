"""The instructor's reference solution; student_template/ is generated from it."""
