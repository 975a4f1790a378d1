using Storage.Devices;

namespace Storage.Raid;

/// <summary>The outcome of a scrub.</summary>
/// <param name="StripesChecked">Stripes read and checked.</param>
/// <param name="StripesSkipped">Stripes not checkable because members were unavailable.</param>
/// <param name="Mismatches">Inconsistent stripes.</param>
/// <param name="MismatchesPerRole">Mismatches blamed on each role (a located corrupt chunk, or the parity when none is located).</param>
/// <param name="Repaired">Stripes rewritten consistent (repair mode).</param>
public sealed record ScrubResult(long StripesChecked, long StripesSkipped, long Mismatches, IReadOnlyList<long> MismatchesPerRole, long Repaired);

public sealed partial class RaidArray
{
    private long _scrubDone, _scrubTotal;

    /// <summary>Stripes done and total of the scrub in progress; (0, 0) when none runs.</summary>
    public (long Done, long Total) ScrubProgress => (Interlocked.Read(ref _scrubDone), Interlocked.Read(ref _scrubTotal));

    /// <summary>
    /// Reads every stripe and checks its parity. With <paramref name="repair"/>, rewrites what is wrong:
    /// RAID-6 and Reed-Solomon (m ≥ 2) locate a single silently corrupt chunk per stripe and rebuild it;
    /// RAID-1 with three or more copies takes the majority; otherwise parity is recomputed from the data
    /// (as md's repair does). User I/O continues; each stripe is locked only while it is checked.
    /// </summary>
    public Task<ScrubResult> ScrubAsync(bool repair, CancellationToken cancellationToken = default)
        => ScrubAsync(repair ? ScrubMode.Repair : ScrubMode.Check, cancellationToken);

    private enum ScrubMode
    {
        Check,
        Repair,
        Resync,   // initial parity: recompute parity from data wherever it differs, blame nothing
    }

    /// <param name="mode">Check, repair, or resync (parity from data, nothing blamed).</param>
    /// <param name="cancellationToken">Stops between stripes.</param>
    /// <param name="ranges">Stripe ranges [first, end) to go over, in order; every stripe when null.</param>
    private async Task<ScrubResult> ScrubAsync(ScrubMode mode, CancellationToken cancellationToken, IReadOnlyList<(long First, long End)>? ranges = null)
    {
        bool repair = mode != ScrubMode.Check;
        ObjectDisposedException.ThrowIf(_stopped, this);
        ranges ??= [(0, Geometry.StripeCount)];
        long total = ranges.Sum(r => r.End - r.First);
        Interlocked.Exchange(ref _scrubTotal, total);
        Interlocked.Exchange(ref _scrubDone, 0);
        long checkedCount = 0, skipped = 0, mismatches = 0, repaired = 0;
        var perRole = new long[Geometry.MemberCount];
        using var segment = new StripeBuffer(Geometry.MemberCount, Geometry.ChunkSize);
        using var scratch = new StripeBuffer(Geometry.MemberCount, Geometry.ChunkSize);
        var lost = new List<int>(Geometry.MemberCount);
        var errors = new List<int>();
        try
        {
            foreach (long stripe in ranges.SelectMany(r => Stripes(r.First, r.End)))
            {
                if (Geometry.ParityCount == 0)
                    break;
                cancellationToken.ThrowIfCancellationRequested();
                var gate = StripeLock(stripe);
                await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    lost.Clear();
                    errors.Clear();
                    await ReadRowsAsync(stripe, 0, segment, AllRows, lost, errors, cancellationToken).ConfigureAwait(false);
                    if (lost.Count > 0)
                    {
                        // Read errors are repaired from parity when they can be; missing members are rebuild's job.
                        if (errors.Count > 0 && lost.Count <= Geometry.ParityCount)
                        {
                            _code.Reconstruct(segment.Span, lost.ToArray());
                            await RewriteAsync(stripe, 0, segment, errors, cancellationToken).ConfigureAwait(false);
                        }
                        skipped++;
                        continue;
                    }
                    checkedCount++;
                    int corruptRow = -1;
                    if (mode == ScrubMode.Resync ? _code.IsConsistent(segment.Span) : _code.Check(segment.Span, scratch.Span, out corruptRow))
                        continue;
                    mismatches++;
                    var rows = new List<int>();
                    if (corruptRow >= 0)
                    {
                        rows.Add(corruptRow);
                        if (repair)
                            _code.Reconstruct(segment.Span, [corruptRow]);
                    }
                    else
                    {
                        for (int row = Geometry.DataCount; row < Geometry.MemberCount; row++)
                            rows.Add(row);
                        if (repair)
                            _code.Encode(segment.Span);
                    }
                    foreach (int row in rows)
                        perRole[_layout.MemberOf(stripe, row)]++;
                    if (repair)
                    {
                        var targets = rows.Select(row => (row, WritableMember(stripe, row))).Where(t => t.Item2 is not null).Select(t => (t.row, t.Item2!)).ToList();
                        await MarkAsync(stripe, cancellationToken).ConfigureAwait(false);
                        try
                        {
                            await WriteRowsAsync(stripe, 0, segment, targets, forceUnitAccess: false, cancellationToken).ConfigureAwait(false);
                        }
                        finally
                        {
                            Unmark(stripe);
                        }
                        repaired++;
                    }
                }
                catch (BlockDeviceException) when (!cancellationToken.IsCancellationRequested)
                {
                    skipped++;
                }
                finally
                {
                    gate.Release();
                    Interlocked.Increment(ref _scrubDone);
                }
            }
            if (repair && repaired > 0)
                await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Exchange(ref _scrubTotal, 0);
            Interlocked.Exchange(ref _scrubDone, 0);
        }
        var result = new ScrubResult(checkedCount, skipped, mismatches, perRole, repaired);
        Notify($"scrub {mode.ToString().ToLowerInvariant()}: {checkedCount} stripes checked, {mismatches} mismatched, {repaired} repaired, {skipped} skipped");
        return result;
    }

    private static IEnumerable<long> Stripes(long first, long end)
    {
        for (long stripe = first; stripe < end; stripe++)
            yield return stripe;
    }
}
