using System.Diagnostics;
using Spectre.Console;

namespace Storage.Cli;

/// <summary>
/// Progress of long work: a Spectre.Console bar with rate and ETA on a terminal; a plain line every quarter
/// otherwise (pipes, logs, tests), so that output stays readable where nothing can be redrawn.
/// </summary>
internal static class Progress
{
    /// <summary>Runs <paramref name="work"/>, which reports bytes done (of <paramref name="total"/>) as it goes.</summary>
    public static Task RunAsync(TextWriter output, string phase, long total, Func<Action<long>, Task> work)
        => RunAsync(output, phase, report => work(done => report(done, total)));

    /// <summary>Runs <paramref name="work"/>, which reports bytes done and the total (known once it starts) as it goes.</summary>
    public static async Task RunAsync(TextWriter output, string phase, Func<Action<long, long>, Task> work)
    {
        if (!Tables.IsTerminal(output))
        {
            var plain = new PlainLines(output, phase);
            await work(plain.Report).ConfigureAwait(false);
            return;
        }
        await Tables.ConsoleFor(output).Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(Markup.Escape(phase), maxValue: 1);
                await work((done, total) =>
                {
                    task.MaxValue = Math.Max(total, 1);
                    task.Value = done;
                }).ConfigureAwait(false);
                task.Value = task.MaxValue;
            }).ConfigureAwait(false);
    }

    /// <summary>"phase: 50% at 812 MB/s", once per quarter.</summary>
    private sealed class PlainLines(TextWriter output, string phase)
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private int _lastQuarter;

        public void Report(long done, long total)
        {
            int quarter = total == 0 ? 4 : (int)(4 * Math.Min(done, total) / total);
            if (quarter <= _lastQuarter)
                return;
            _lastQuarter = quarter;
            double rate = done / Math.Max(_clock.Elapsed.TotalSeconds, 1e-6);
            output.WriteLine($"  {phase}: {(total == 0 ? 100 : 100 * done / total)}% at {rate / 1e6:0} MB/s");
        }
    }
}
