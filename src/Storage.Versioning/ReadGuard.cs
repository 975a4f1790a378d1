namespace Storage.Versioning;

/// <summary>
/// Lets a freed block be reused only after every read that might still be reading it has finished: reads enter the
/// current epoch; <see cref="DrainAsync"/> starts a new epoch and waits for the old one's reads.
/// </summary>
internal sealed class ReadGuard
{
    private readonly long[] _readers = new long[2];
    private int _epoch;

    public int Enter()
    {
        while (true)
        {
            int epoch = Volatile.Read(ref _epoch);
            Interlocked.Increment(ref _readers[epoch]);
            if (Volatile.Read(ref _epoch) == epoch)
                return epoch;
            Interlocked.Decrement(ref _readers[epoch]);
        }
    }

    public void Exit(int epoch) => Interlocked.Decrement(ref _readers[epoch]);

    /// <summary>Waits for every read that entered before this call. Callers serialise calls.</summary>
    public async ValueTask DrainAsync()
    {
        int old = Volatile.Read(ref _epoch);
        await WaitAsync(1 - old).ConfigureAwait(false);
        Volatile.Write(ref _epoch, 1 - old);
        await WaitAsync(old).ConfigureAwait(false);
    }

    private async ValueTask WaitAsync(int epoch)
    {
        for (int spins = 0; Volatile.Read(ref _readers[epoch]) != 0; spins++)
        {
            if (spins < 64)
                await Task.Yield();
            else
                await Task.Delay(1).ConfigureAwait(false);
        }
    }
}
