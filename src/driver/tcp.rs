//! Modbus TCP master: tokio-modbus's client behind a wrapper that only exposes the
//! four read functions (the client itself is private, so no write can be reached).

use crate::driver::modbus::{Function, ReadData, ReadRequest};
use crate::driver::{LinkError, ModbusLink};
use std::time::Duration;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::slave::{Slave, SlaveContext};

/// A read-only Modbus TCP connection; the unit id is chosen per request.
pub struct TcpLink {
    /// `None` after a timed-out request: its late answer could be taken for the next
    /// one, so the next read reconnects first.
    ctx: Option<Context>,
    address: String,
    connect_timeout: Duration,
}

impl TcpLink {
    /// Connects to `address` (`host:port`) within `timeout`.
    pub async fn connect(address: &str, timeout: Duration) -> Result<TcpLink, LinkError> {
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| LinkError::Transport(format!("{address}: connect timed out")))?
            .map_err(|e| LinkError::Transport(format!("{address}: {e}")))?;
        // Small request/response frames: send at once.
        let _ = stream.set_nodelay(true);
        Ok(TcpLink {
            ctx: Some(tokio_modbus::client::tcp::attach(stream)),
            address: address.to_string(),
            connect_timeout: timeout,
        })
    }

    async fn read_inner(ctx: &mut Context, req: &ReadRequest) -> Result<ReadData, LinkError> {
        let (a, n) = (req.address, req.count);
        let result = match req.function {
            Function::ReadCoils => ctx.read_coils(a, n).await.map(|r| r.map(ReadData::Bits)),
            Function::ReadDiscreteInputs => ctx
                .read_discrete_inputs(a, n)
                .await
                .map(|r| r.map(ReadData::Bits)),
            Function::ReadHoldingRegisters => ctx
                .read_holding_registers(a, n)
                .await
                .map(|r| r.map(ReadData::Words)),
            Function::ReadInputRegisters => ctx
                .read_input_registers(a, n)
                .await
                .map(|r| r.map(ReadData::Words)),
        };
        match result {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(code)) => Err(LinkError::Exception(u8::from(code))),
            Err(tokio_modbus::Error::Transport(e)) => Err(LinkError::Transport(e.to_string())),
            Err(tokio_modbus::Error::Protocol(_)) => Err(LinkError::Corrupt),
        }
    }
}

impl ModbusLink for TcpLink {
    async fn read(
        &mut self,
        slave: u8,
        req: &ReadRequest,
        timeout: Duration,
    ) -> Result<ReadData, LinkError> {
        if self.ctx.is_none() {
            let fresh = TcpLink::connect(&self.address, self.connect_timeout).await?;
            self.ctx = fresh.ctx;
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(LinkError::Transport("not connected".into()));
        };
        ctx.set_slave(Slave(slave));
        match tokio::time::timeout(timeout, Self::read_inner(ctx, req)).await {
            Ok(Err(LinkError::Transport(e))) => {
                self.ctx = None;
                Err(LinkError::Transport(e))
            }
            Ok(r) => r,
            Err(_) => {
                self.ctx = None;
                Err(LinkError::Timeout)
            }
        }
    }

    fn take_counts(&mut self) -> (u64, u64) {
        (0, 0)
    }
}
