"""The Faust application: topics, codecs, the encounter table and the agents."""
