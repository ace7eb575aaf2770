//! Vendor profiles: what differs between LTE modules on top of 3GPP TS
//! 27.007 — how the data connection comes up on the network interface, what
//! the module prints when it (re)boots, and extra set-up commands. Taken
//! from the vendors' AT manuals (Quectel EC2x/EG2x "AT Commands Manual"
//! and "ECM/QMI" application notes, SIMCom SIM7600 "AT Command Manual").

/// A family of modems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Any 3GPP modem: `AT+CGACT=1,<cid>` and the address from `+CGPADDR`.
    Generic,
    /// Quectel EC25/EC21/EG25 in ECM mode: the data call is started with
    /// `AT+QNETDEVCTL`; boots with `RDY`.
    QuectelEc2x,
    /// SIMCom SIM7600 family in RmNet/ECM: `AT$QCRMCALL`; boots with
    /// `PB DONE`.
    SimcomSim7600,
}

impl Profile {
    /// Picks the profile from the `ATI` text.
    pub fn detect(ati: &str) -> Self {
        let t = ati.to_ascii_uppercase();
        if t.contains("QUECTEL") && (t.contains("EC2") || t.contains("EG2")) {
            Self::QuectelEc2x
        } else if t.contains("SIMCOM") && t.contains("SIM76") {
            Self::SimcomSim7600
        } else {
            Self::Generic
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::QuectelEc2x => "quectel-ec2x",
            Self::SimcomSim7600 => "simcom-sim7600",
        }
    }

    /// Commands after the APN is set (URC routing and the like).
    pub fn init_commands(self) -> &'static [&'static str] {
        match self {
            Self::Generic => &[],
            // URCs on the AT port we talk to, not the USB modem port.
            Self::QuectelEc2x => &["AT+QURCCFG=\"urcport\",\"usbat\""],
            Self::SimcomSim7600 => &[],
        }
    }

    /// Commands that bring the data connection of `cid` up.
    pub fn activate(self, cid: u8) -> Vec<String> {
        match self {
            Self::Generic => vec![format!("AT+CGACT=1,{cid}")],
            Self::QuectelEc2x => vec![format!("AT+QNETDEVCTL=1,{cid},1")],
            Self::SimcomSim7600 => vec![format!("AT$QCRMCALL=1,{cid}")],
        }
    }

    /// Whether `line` is what the module prints when it has just booted.
    pub fn is_boot_urc(self, line: &str) -> bool {
        match self {
            Self::Generic => line == "RDY" || line == "^SYSSTART" || line == "PB DONE",
            Self::QuectelEc2x => line == "RDY",
            Self::SimcomSim7600 => line == "PB DONE" || line == "RDY",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_from_ati() {
        assert_eq!(
            Profile::detect("Quectel EC25 Revision: EC25EFAR06A06M4G"),
            Profile::QuectelEc2x
        );
        assert_eq!(
            Profile::detect("Manufacturer: SIMCOM INCORPORATED Model: SIMCOM_SIM7600E-H"),
            Profile::SimcomSim7600
        );
        assert_eq!(Profile::detect("Sierra Wireless MC7455"), Profile::Generic);
        assert_eq!(
            Profile::QuectelEc2x.activate(1),
            vec!["AT+QNETDEVCTL=1,1,1"]
        );
    }
}
