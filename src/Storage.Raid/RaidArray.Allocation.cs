using Storage.Devices;

namespace Storage.Raid;

public sealed partial class RaidArray : IAllocationStatus
{
    /// <summary>
    /// Which stripes hold data: a stripe is a hole (reads as zeros, takes no space) when every member holds its chunk of
    /// it as a hole — what a trim of whole stripes leaves on file members. Stripe granularity: a stripe with any
    /// allocated chunk is data. Members that cannot say (block devices, memory disks), or a missing or rebuilding member,
    /// make the stripes they hold data.
    /// </summary>
    /// <exception cref="ArgumentException">The range is not sector-aligned, empty or outside the array.</exception>
    public async ValueTask<IReadOnlyList<AllocationExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        if (length == 0)
            throw new ArgumentException($"Array '{Name}': an allocation query needs at least one sector.", nameof(length));
        long stripeBytes = Geometry.StripeDataSize;
        long first = offset / stripeBytes, end = Math.Min((offset + length + stripeBytes - 1) / stripeBytes, first + 4096);
        var holes = new bool[end - first];
        Array.Fill(holes, true);
        foreach (var member in _roles)
        {
            if (member is not { State: MemberState.Active } || member.Device is not IAllocationStatus allocation)
                return [new AllocationExtent(Math.Min(length, end * stripeBytes - offset), AllocationState.Data)];
            await MarkDataAsync(allocation, first, holes, cancellationToken).ConfigureAwait(false);
        }
        var extents = new List<AllocationExtent>();
        long position = offset, stop = Math.Min(offset + length, end * stripeBytes);
        for (long stripe = first; stripe < end && position < stop; stripe++)
        {
            long upTo = Math.Min((stripe + 1) * stripeBytes, stop);
            var state = holes[stripe - first] ? AllocationState.Hole | AllocationState.Zero : AllocationState.Data;
            if (extents.Count > 0 && extents[^1].State == state)
                extents[^1] = new AllocationExtent(extents[^1].Length + upTo - position, state);
            else
                extents.Add(new AllocationExtent(upTo - position, state));
            position = upTo;
        }
        return extents;
    }

    /// <summary>Clears the hole mark of every stripe in which this member's chunk holds any data.</summary>
    private async Task MarkDataAsync(IAllocationStatus member, long first, bool[] holes, CancellationToken cancellationToken)
    {
        long chunk = Geometry.ChunkSize;
        long start = _layout.MemberOffset(first, 0), end = start + holes.Length * chunk;
        for (long position = start; position < end;)
        {
            var extents = await member.GetAllocationAsync(position, end - position, cancellationToken).ConfigureAwait(false);
            if (extents.Count == 0)
                break;
            foreach (var extent in extents)
            {
                if ((extent.State & AllocationState.Hole) == 0)
                {
                    for (long at = position; at < position + extent.Length; at = (at - start) / chunk * chunk + start + chunk)
                        holes[(at - start) / chunk] = false;
                }
                position += extent.Length;
            }
        }
    }
}
