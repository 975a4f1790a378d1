using Microsoft.Extensions.ObjectPool;

namespace Storage.Raid;

/// <summary>
/// The state of one stripe update or degraded read: its segment of the stripe and the row lists it builds. Pooled
/// per array (<see cref="Pool"/>), sized for the array's member count, so a warm request allocates nothing; one
/// request uses an instance at a time, from <see cref="ObjectPool{T}.Get"/> to <see cref="ObjectPool{T}.Return"/>.
/// </summary>
internal sealed class StripeRequest
{
    private StripeRequest(int members)
    {
        Lost = new List<int>(members);
        Errors = new List<int>(members);
        Targets = new List<(int Row, Member Member)>(members);
        Holders = new Guid[members];
    }

    /// <summary>The segment; <see cref="StripeBuffer.Open"/> it for the request's width. Returned to the byte pool with the request.</summary>
    public StripeBuffer Segment { get; } = new();

    /// <summary>Rows no member could serve, or whose read failed.</summary>
    public List<int> Lost { get; }

    /// <summary>Rows whose read failed (a subset of <see cref="Lost"/>).</summary>
    public List<int> Errors { get; }

    /// <summary>Rows to write and the member each goes to.</summary>
    public List<(int Row, Member Member)> Targets { get; }

    /// <summary>Member id per role for journal headers.</summary>
    public Guid[] Holders { get; }

    /// <summary>A pool of requests for an array of <paramref name="members"/> members.</summary>
    public static ObjectPool<StripeRequest> Pool(int members)
        => new DefaultObjectPool<StripeRequest>(new Policy(members), Math.Max(64, 8 * Environment.ProcessorCount));

    private void Reset()
    {
        Segment.Dispose();
        Lost.Clear();
        Errors.Clear();
        Targets.Clear();
        Array.Clear(Holders);
    }

    private sealed class Policy(int members) : PooledObjectPolicy<StripeRequest>
    {
        public override StripeRequest Create() => new(members);

        public override bool Return(StripeRequest obj)
        {
            obj.Reset();
            return true;
        }
    }
}
