"""Luigi's wordcount example, migrated by changing the base class of WordCount only.

    InputText (external: one text file per day, under data/text/) -> WordCount (per interval)

InputText stays a plain ExternalTask: the files it names are keyed by content, so editing one
text re-counts the interval and nothing else ever does. As in Luigi's example, the texts are yours
to deliver (the interval's end is exclusive: 2024-01-01 and 2024-01-02 here):

    mkdir -p data/text && echo "the cat sat" > data/text/2024-01-01.txt && echo "the dog" > data/text/2024-01-02.txt
    PYTHONPATH=examples/luigi:. luigi --module wordcount WordCount \
        --date-interval 2024-01-01-2024-01-03 --local-scheduler
"""

import luigi

from luigi_nixworkflow import NixTask


class InputText(luigi.ExternalTask):
    """A day's text, delivered by someone else."""

    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(self.date.strftime("data/text/%Y-%m-%d.txt"))


class WordCount(NixTask):
    """How often each word occurs in the interval's texts."""

    date_interval = luigi.DateIntervalParameter()

    def requires(self):
        return [InputText(date) for date in self.date_interval.dates()]

    def output(self):
        return luigi.LocalTarget(f"data/text-count/{self.date_interval}")

    def run(self):
        counts = {}
        for text in self.input():
            with text.open("r") as lines:
                for line in lines:
                    for word in line.split():
                        counts[word] = counts.get(word, 0) + 1
        with self.output().open("w") as out:
            for word, count in sorted(counts.items()):
                out.write(f"{word}\t{count}\n")
