"""Luigi's top_artists example, migrated by changing base classes only (luigi.Task -> NixTask).

    Streams (one file per day) -> AggregateArtists (per interval) -> Top10Artists

Each task keeps its own run() and output() (LocalTargets written through self.output().open('w')).
Streams draws random numbers, as in Luigi's example: its first result is stored and every later
run is served that same file, so the pipeline downstream is reproducible. StreamsHdfs overrides
output() with an HdfsTarget, which the store cannot hold: it runs as a plain Luigi task (warned).
The Spark and Postgres variants of Luigi's example are left out (they need a cluster).

    PYTHONPATH=examples/luigi:. luigi --module top_artists Top10Artists \
        --date-interval 2024-01-01-2024-01-03 --local-scheduler
"""

import random
from collections import Counter
from heapq import nlargest

import luigi
import luigi.contrib.hdfs

from luigi_nixworkflow import NixTask


class Streams(NixTask):
    """A day of (user, artist, track) plays: faked here, as in Luigi's example."""

    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(self.date.strftime("data/streams_%Y_%m_%d_faked.tsv"))

    def run(self):
        with self.output().open("w") as out:
            for _ in range(1000):
                out.write(f"{random.randint(0, 999)} {random.randint(0, 99)} {random.randint(0, 999)}\n")


class StreamsHdfs(Streams):
    """The same plays, kept on HDFS."""

    def output(self):
        return luigi.contrib.hdfs.HdfsTarget(self.date.strftime("data/streams_%Y_%m_%d_faked.tsv"))


class AggregateArtists(NixTask):
    """How often each artist was played in the interval."""

    date_interval = luigi.DateIntervalParameter()

    def output(self):
        return luigi.LocalTarget(f"data/artist_streams_{self.date_interval}.tsv")

    def requires(self):
        return [Streams(date) for date in self.date_interval]

    def run(self):
        plays = Counter()
        for day in self.input():
            with day.open("r") as lines:
                for line in lines:
                    _, artist, _ = line.split()
                    plays[artist] += 1
        with self.output().open("w") as out:
            for artist, count in sorted(plays.items()):
                out.write(f"{artist}\t{count}\n")


class Top10Artists(NixTask):
    """The ten most played artists of the interval."""

    date_interval = luigi.DateIntervalParameter()

    def requires(self):
        return AggregateArtists(self.date_interval)

    def output(self):
        return luigi.LocalTarget(f"data/top_artists_{self.date_interval}.tsv")

    def run(self):
        top = nlargest(10, self._counts())
        with self.output().open("w") as out:
            for plays, artist in top:
                out.write(f"{self.date_interval.date_a}\t{self.date_interval.date_b}\t{artist}\t{plays}\n")

    def _counts(self):
        with self.input().open("r") as lines:
            for line in lines:
                artist, plays = line.split()
                yield int(plays), artist
