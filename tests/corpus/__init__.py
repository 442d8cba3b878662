"""Faulty and hostile submissions, built at test time from the example assignment's release."""
