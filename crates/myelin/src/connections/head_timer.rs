//! How long a connection may take to send a request head: the header-read timeout, and the
//! idle keep-alive timeout between requests.
//!
//! hyper has one knob for both, `header_read_timeout`, whose clock starts when the connection
//! begins waiting for a request head (at accept, and again as soon as a response is finished).
//! Alone it would close an idle keep-alive connection after the header timeout. So the
//! connection gets its own [`Timer`]: the sleep hyper asks for resolves
//! - for the first request, `header_timeout` after the connection started (the deadline hyper
//!   asked for);
//! - for later ones, `idle_timeout` after the previous response while no byte has arrived, and
//!   `header_timeout` after the first byte of the next request once one has.
//!
//! The first byte is seen through [`ActivityIo`], which notes when reads bring data. hyper polls
//! the sleep each time it finds the head incomplete, i.e. right after every read, so the first
//! byte is noted as it arrives. (If hyper ever asked for its header sleep differently, the
//! fallback is hyper's own deadline: stricter, never looser.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a connection last received bytes.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Nanoseconds after `started` of the last read that brought data, plus one (0: none yet).
    last_read: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            last_read: AtomicU64::new(0),
        })
    }

    fn record_read(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_read.store(nanos + 1, Ordering::Relaxed);
    }

    fn last_read(&self) -> Option<Instant> {
        match self.last_read.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.started + Duration::from_nanos(n - 1)),
        }
    }
}

/// A connection's byte stream, noting in [`Activity`] when reads bring data.
pub struct ActivityIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        ActivityIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.record_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The [`Timer`] of one connection (see the module docs).
pub struct HeadTimer {
    activity: Arc<Activity>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Whether the connection already waited for a head (so the next wait follows a response).
    waited_before: AtomicBool,
}

impl HeadTimer {
    pub fn new(activity: Arc<Activity>, header_timeout: Duration, idle_timeout: Duration) -> Self {
        HeadTimer {
            activity,
            header_timeout,
            idle_timeout,
            waited_before: AtomicBool::new(false),
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    /// hyper asks for this when it starts waiting for a request head, with `deadline` =
    /// now + the header timeout.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let after_response = self.waited_before.swap(true, Ordering::Relaxed);
        let start = Instant::now();
        let idle_deadline = start + self.idle_timeout;
        Box::pin(HeadSleep {
            activity: self.activity.clone(),
            start,
            header_timeout: self.header_timeout,
            after_response,
            first_byte: None,
            deadline: if after_response {
                idle_deadline
            } else {
                deadline
            },
            sleep: Box::pin(tokio::time::sleep_until(if after_response {
                idle_deadline.into()
            } else {
                deadline.into()
            })),
        })
    }
}

/// A plain sleep, for any other use hyper makes of the timer.
struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for PlainSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for PlainSleep {}

/// The wait for one request head.
struct HeadSleep {
    activity: Arc<Activity>,
    start: Instant,
    header_timeout: Duration,
    /// Whether this wait follows a response (a keep-alive wait) rather than the connection start.
    after_response: bool,
    /// When the first byte of this head arrived (for waits after a response).
    first_byte: Option<Instant>,
    /// What `sleep` is set to.
    deadline: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.after_response && this.first_byte.is_none() {
            if let Some(read) = this.activity.last_read().filter(|t| *t >= this.start) {
                // The next request began: from now on its head has the header timeout.
                this.first_byte = Some(read);
                this.deadline = read + this.header_timeout;
                this.sleep.as_mut().reset(this.deadline.into());
            }
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_notes_reads() {
        let a = Activity::new();
        assert_eq!(a.last_read(), None);
        let before = Instant::now();
        a.record_read();
        let read = a.last_read().expect("a read");
        assert!(
            read >= a.started
                && read <= Instant::now()
                && read + Duration::from_millis(1) >= before
        );
    }

    #[tokio::test]
    async fn the_first_head_gets_hyper_s_deadline_and_later_ones_the_idle_timeout() {
        let activity = Activity::new();
        let timer = HeadTimer::new(
            activity.clone(),
            Duration::from_secs(10),
            Duration::from_secs(75),
        );
        let asked = Instant::now() + Duration::from_secs(10);
        let first = timer.sleep_until(asked);
        let head = |s: &Pin<Box<dyn Sleep>>| {
            // Only this module makes `HeadSleep`s, so the cast is checked by `is`.
            assert!(s.is::<HeadSleep>());
        };
        head(&first);
        let mut second = timer.sleep_until(Instant::now() + Duration::from_secs(10));
        head(&second);
        let deadline = |s: &mut Pin<Box<dyn Sleep>>| {
            s.as_mut()
                .downcast_mut_pin::<HeadSleep>()
                .expect("a head sleep")
                .deadline
        };
        let mut first = first;
        assert_eq!(deadline(&mut first), asked);
        let idle = deadline(&mut second);
        assert!(
            idle >= Instant::now() + Duration::from_secs(70),
            "idle wait"
        );
        // A byte arrives: polling moves the deadline to the header timeout after it.
        activity.record_read();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(second.as_mut().poll(&mut cx).is_pending());
        let after_byte = deadline(&mut second);
        assert!(after_byte < idle && after_byte <= Instant::now() + Duration::from_secs(10));
    }
}
