"""Settings → This computer: what Hearth runs models on, from app/hardware.py (the same figures
the fit badges count with)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QWidget

from app import hardware
from app.hardware import Hardware, LlamaBuild
from app.settings import Settings
from app.units import human_size
from ui.tasks import run_task


class HardwarePanel(QGroupBox):
    about_requested = Signal()

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("This computer", parent)
        self.settings = settings
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.found: Hardware | None = None
        self.build: LlamaBuild | None = None
        self.build_error = ""
        self._reading = False

        self.processor = QLabel()
        self.cores = QLabel()
        self.threads = QLabel()
        self.features = QLabel()
        self.memory = QLabel()
        self.gpu = QLabel()
        self.backend = QLabel()
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for label, field in (
            ("Processor", self.processor),
            ("Cores", self.cores),
            ("Threads for models", self.threads),
            ("Instruction sets llama.cpp uses", self.features),
            ("Memory", self.memory),
            ("GPU", self.gpu),
            ("Models run on", self.backend),
        ):
            field.setWordWrap(True)
            field.setTextFormat(Qt.TextFormat.PlainText)  # names come from the system
            field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(label, field)
        self.backend.setTextFormat(Qt.TextFormat.RichText)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read free memory again")
        self.refresh_button.clicked.connect(self.refresh)
        about = QPushButton("About Hearth…")
        about.setToolTip("Versions, llama.cpp's build and licences (F1)")
        about.clicked.connect(self.about_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(about)
        buttons.addStretch(1)
        form.addRow(buttons)
        self._show()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()  # free memory changes while Hearth runs

    @Slot()
    def refresh(self) -> None:
        if self._reading:
            return
        self._reading = True
        run_task(self.pool, hardware.hardware, self._on_hardware, self._on_hardware_error)
        if self.build is None and not self.build_error:
            run_task(self.pool, hardware.llama_build, self._on_build, self._on_build_error)

    def _on_hardware(self, found: Hardware) -> None:
        self._reading = False
        self.found = found
        self._show()

    def _on_hardware_error(self, error: Exception) -> None:
        self._reading = False
        self.memory.setText(f"Could not be read: {error}")

    def _on_build(self, build: LlamaBuild) -> None:
        self.build = build
        self._show()

    def _on_build_error(self, error: Exception) -> None:
        self.build_error = str(error)
        self._show()

    def threads_text(self) -> str:
        automatic = hardware.default_threads()
        if self.settings.threads in (0, automatic):
            return f"{automatic} (Automatic: one per physical core)"
        return f"{self.settings.threads} (set under Engine; Automatic would be {automatic})"

    def _show(self) -> None:
        found = self.found
        reading = "Reading…"
        if found is None:
            for field in (self.processor, self.cores, self.threads, self.memory, self.gpu):
                field.setText(reading)
        else:
            cpu = found.processor
            self.processor.setText(f"{cpu.model} ({cpu.architecture})")
            cores = f"{cpu.physical_cores} physical, {cpu.logical_cores} logical"
            if cpu.performance_cores:
                cores += f", {cpu.performance_cores} performance"
            self.cores.setText(cores)
            self.threads.setText(self.threads_text())
            mem = found.memory
            self.memory.setText(f"{human_size(mem.available)} free of {human_size(mem.total)}")
            if not found.gpus:
                self.gpu.setText("None found")
            else:
                lines = []
                for g in found.gpus:
                    if g.unified_memory:
                        lines.append(
                            f"{g.name} — shares the computer's memory "
                            f"(up to {human_size(g.vram_total)})"
                        )
                    else:
                        lines.append(
                            f"{g.name} — {human_size(g.vram_free)} free of "
                            f"{human_size(g.vram_total)}"
                        )
                self.gpu.setText("\n".join(lines))
        build = self.build
        if build is not None:
            self.features.setText(", ".join(build.cpu_features) or "baseline instructions only")
            gpus = found.gpus if found is not None else ()
            in_use = hardware.backend_in_use(build, gpus, self.settings.gpu_layers)
            note = ""
            if gpus and not build.gpu_backends:
                note = (
                    "<br><span style='color:#c08000'>This build of llama.cpp has no GPU backend: "
                    "the GPU is not used (README → GPU builds).</span>"
                )
            self.backend.setText(f"{html.escape(in_use)}{note}")
        elif self.build_error:
            self.features.setText(f"Unknown ({self.build_error})")
            self.backend.setText("Unknown")
        else:
            self.features.setText(reading)
            self.backend.setText(reading)
