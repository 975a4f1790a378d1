using System.Diagnostics;

namespace Storage.Cli;

/// <summary>
/// Progress of long work: a redrawn bar with rate and ETA on a terminal, a plain line every quarter otherwise.
/// </summary>
internal sealed class Progress(TextWriter output, string phase, long total, string unit = "MB")
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _terminal = !Console.IsOutputRedirected && output == Console.Out;
    private int _lastQuarter = -1;
    private long _lastDrawMs = -1000;

    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Reports <paramref name="done"/> of the total (in bytes when the unit is MB).</summary>
    public void Report(long done, double? bytesPerSecond = null, TimeSpan? remaining = null)
    {
        double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-6);
        double rate = bytesPerSecond ?? done / seconds;
        var eta = remaining ?? (done > 0 ? TimeSpan.FromSeconds(seconds * (total - done) / done) : TimeSpan.Zero);
        if (_terminal)
        {
            if (done < total && _clock.ElapsedMilliseconds - _lastDrawMs < 100)
                return;
            _lastDrawMs = _clock.ElapsedMilliseconds;
            const int width = 30;
            int filled = total == 0 ? width : (int)(width * done / total);
            output.Write($"\r  {phase,-14} [{new string('#', filled)}{new string('.', width - filled)}] {Percent(done),3}% {rate / 1e6,7:0} {unit}/s ETA {eta.TotalSeconds,4:0}s");
            if (done >= total)
                output.Write("\r" + new string(' ', 86) + "\r");
            return;
        }
        int quarter = total == 0 ? 4 : (int)(4 * done / total);
        if (quarter != _lastQuarter && quarter > 0)
        {
            _lastQuarter = quarter;
            output.WriteLine($"  {phase}: {Percent(done)}% at {rate / 1e6:0} {unit}/s");
        }
    }

    private long Percent(long done) => total == 0 ? 100 : 100 * done / total;
}
