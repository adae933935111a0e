"""Small Qt widgets of the app's side panel: the blendshape bars."""

from __future__ import annotations

import time

from PyQt6 import QtCore, QtGui, QtWidgets

from realtime.blendshapes import ARKIT_NAMES

ROW_HEIGHT_PX = 9  # 26 rows: the panel fits under the avatar in the default 1280x720 window


class BlendshapePanel(QtWidgets.QWidget):
    """The 52 ARKit blendshape weights of the first face as horizontal bars, two columns, painted with QPainter.

    One ``paintEvent`` draws all bars (no child widget per shape: cheap at 25+ updates a second). Shapes the
    retargeting never moves (gaze, tongue) are drawn greyed out.
    """

    PINNED = tuple(name for name in ARKIT_NAMES if name.startswith("eyeLook") or name == "tongueOut")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.weights: dict[str, float] = {}
        self.paint_ms = 0.0
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        font.setPixelSize(ROW_HEIGHT_PX - 1)
        self.setFont(font)
        self.setMinimumHeight(26 * ROW_HEIGHT_PX + 4)
        self.setToolTip("ARKit blendshapes of the first face (sent over VMC); greyed: not tracked by the 3DMM")

    def set_weights(self, weights: dict[str, float] | None) -> None:
        self.weights = dict(weights or {})
        self.update()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt override
        start = time.perf_counter()
        painter = QtGui.QPainter(self)
        metrics = painter.fontMetrics()
        rows = (len(ARKIT_NAMES) + 1) // 2
        row_height = max(8.0, (self.height() - 2) / rows)
        column_width = self.width() / 2
        label_width = metrics.horizontalAdvance("mouthLowerDownRight ")
        palette = self.palette()
        text_color = palette.color(QtGui.QPalette.ColorRole.WindowText)
        muted = palette.color(QtGui.QPalette.ColorGroup.Disabled, QtGui.QPalette.ColorRole.WindowText)
        bar_color = QtGui.QColor(90, 170, 240)
        for index, name in enumerate(ARKIT_NAMES):
            column, row = divmod(index, rows)
            x, y = column * column_width + 2, 1 + row * row_height
            painter.setPen(muted if name in self.PINNED else text_color)
            text_rect = QtCore.QRectF(x, y, label_width, row_height)
            painter.drawText(text_rect, int(QtCore.Qt.AlignmentFlag.AlignVCenter | QtCore.Qt.AlignmentFlag.AlignLeft), name)
            bar_x = x + label_width
            bar_width = max(4.0, column_width - label_width - 6)
            track = QtCore.QRectF(bar_x, y + 2, bar_width, max(2.0, row_height - 4))
            painter.fillRect(track, palette.color(QtGui.QPalette.ColorRole.Base))
            value = min(max(float(self.weights.get(name, 0.0)), 0.0), 1.0)
            if value > 0:
                painter.fillRect(QtCore.QRectF(track.x(), track.y(), track.width() * value, track.height()), bar_color)
        painter.end()
        self.paint_ms = (time.perf_counter() - start) * 1000.0
