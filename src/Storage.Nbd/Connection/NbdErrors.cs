using Storage.Devices;
using Storage.Nbd.Protocol;

namespace Storage.Nbd.Connection;

/// <summary>Maps what a device throws to the NBD error value a client understands.</summary>
internal static class NbdErrors
{
    // Linux errno values an IOException from the runtime carries in HResult.
    private const int ENOSPC = 28, EFBIG = 27, EDQUOT = 122, EROFS = 30;

    /// <summary>
    /// EIO for a failed device (<see cref="BlockDeviceException"/> and other I/O errors), ENOSPC when the cause was a
    /// full file system, EPERM for a device that refuses writes (<see cref="NotSupportedException"/>, EROFS), EINVAL for
    /// a range the device rejects, ESHUTDOWN for a device being closed.
    /// </summary>
    public static int FromException(Exception e, out string message)
    {
        message = e.Message;
        for (var cause = e; cause is not null; cause = cause.InnerException)
        {
            if (cause is IOException { HResult: ENOSPC or EFBIG or EDQUOT })
                return NbdErrno.ENOSPC;
            if (cause is IOException { HResult: EROFS })
                return NbdErrno.EPERM;
        }
        return e switch
        {
            BlockDeviceException or IOException => NbdErrno.EIO,
            NotSupportedException or UnauthorizedAccessException => NbdErrno.EPERM,
            ArgumentException => NbdErrno.EINVAL,
            ObjectDisposedException or OperationCanceledException => NbdErrno.ESHUTDOWN,
            _ => NbdErrno.EIO,
        };
    }

    /// <summary>True for failures a device is expected to report; anything else is a bug worth logging loudly.</summary>
    public static bool IsExpected(Exception e) =>
        e is IOException or NotSupportedException or UnauthorizedAccessException or ObjectDisposedException or OperationCanceledException;
}
